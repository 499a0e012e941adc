"""Restart a service via Ansible."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "Restart a service"
    description = "Restarts a systemd/SysV service through Ansible's service module."
    platform = "ansible"
    category = "Services"
    timeout = 180
    params = [
        {"name": "sys_param_1", "label": "Service", "type": "str", "required": True,
         "pattern": "[A-Za-z0-9][A-Za-z0-9@._-]{0,63}", "help": "Unit name, e.g. nginx or cron"},
    ]

    def run(self):
        return self.ansible("ansible.builtin.service", {"name": self.params["sys_param_1"], "state": "restarted"})
