"""The SSH gateway: users' own ssh, scp and sftp through Bastion, as one more front door of live sessions."""
from .server import SSHGateway

__all__ = ["SSHGateway"]
