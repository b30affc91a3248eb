"""The host agent suppliers run on their servers. Standard library only; talks to the platform
over HTTP(S) and to the hardware through NVML, nvidia-smi or a declared inventory file."""

__version__ = "0.1.0"
