"""Attribute extensions (SREG, AX, PAPE): ordinary plugins on the extension hooks."""
