"""`ltdd run`: data -> experts -> distillation -> evaluation -> report in one run directory."""
