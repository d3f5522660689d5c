"""mlxk: declarative MLX model workspaces."""

__version__ = "0.1.0"
