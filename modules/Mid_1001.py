"""View system log: the last lines of a log file under /var/log."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "View system log"
    description = "Shows the last N lines of a system log file."
    platform = "ssh"
    category = "Logs"
    timeout = 60
    params = [
        {"name": "sys_param_1", "label": "Lines", "type": "int", "required": True, "min": 1, "max": 5000,
         "default": 50, "help": "How many lines from the end"},
        {"name": "sys_param_2", "label": "Log file", "type": "choice", "required": True,
         "choices": ["syslog", "messages", "auth.log", "kern.log", "dpkg.log"], "default": "syslog"},
    ]

    async def run(self):
        return await self.ssh(["tail", "-n", str(self.params["sys_param_1"]), "/var/log/" + self.params["sys_param_2"]])
