"""`python -m mmcompress` is the `mmcompress` command (what torchrun starts: `torchrun ... -m mmcompress run R`)."""
from mmcompress.cli import cli

if __name__ == "__main__":
    cli(prog_name="mmcompress")
