"""The actions a node can run: their specs (`specs`), the functions behind them (`plan`,
`ask_user`, `execute`, registered in `catalogue`), the prompts and response schemas of their LLM
tasks, and the facts those tasks read."""
