"""The console's widgets: tables that announce a choice, the overview, the evidence list
with its hidden content, and a status line for answers and refusals."""
