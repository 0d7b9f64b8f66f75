"""One module per application protocol; each defines one analyzer.app.base.AppDecoder subclass."""
