"""Uptime and load via Salt: each host's uptime through salt-ssh's cmd.run_all."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "Uptime (Salt)"
    description = "Uptime and load averages of each host, through Salt's cmd.run_all over salt-ssh."
    platform = "salt"
    category = "System"
    timeout = 180
    params = []

    def run(self):
        # a list command with python_shell off: no shell on the target, each word passed as it is
        return self.salt("cmd.run_all", {"cmd": ["uptime"], "python_shell": False})
