"""vm tier: what needs Debian's own kernel (ESP) runs inside a qemu VM (tests/vm/qemu.py)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: runs inside a throwaway qemu VM with Debian 13's kernel (tests/vm)")
