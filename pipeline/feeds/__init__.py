"""Feed files from the systems around us: parse and validate with polars, reasons for rejects."""
