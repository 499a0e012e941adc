"""System version: the operating system and kernel of each host."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "System version"
    description = "Shows the OS release (PRETTY_NAME from /etc/os-release) and the kernel version."
    platform = "ssh"
    category = "System"
    timeout = 30
    params = []

    async def run(self):
        results = await self.ssh(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\" && uname -sr"])
        return results
