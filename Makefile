# The README's two commands. Each installs what it needs first (scripts/bootstrap, idempotent).
.PHONY: demo test install bench docs

install:
	@scripts/bootstrap

demo: install
	.venv/bin/mmcompress run recipes/clip-shapes.yaml

test: install
	.venv/bin/python -m pytest -q

bench: install
	.venv/bin/python benchmarks/vit_b32_tower.py --sweep

docs: install
	.venv/bin/python -m mmcompress.recipe_docs > docs/recipe.md
