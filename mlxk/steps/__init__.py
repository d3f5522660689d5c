"""Build steps applied to a workspace's source snapshot (convert: quantize, dtype, dequantize)."""
