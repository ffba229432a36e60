"""Run configurations (big_vision style: each file has get_config(); see its docstring)."""
