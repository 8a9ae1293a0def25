# -p no:cacheprovider: no .pytest_cache in the sandbox
python3 -m pytest --color=no -p no:cacheprovider *test*.py
