"""The learned regional model inside the 30-second LETKF (issue: ML regional weather prediction)."""
