"""Disk usage via Ansible: df on every host."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "Disk usage"
    description = "Filesystem usage (df -h) through Ansible's command module."
    platform = "ansible"
    category = "System"
    timeout = 120
    params = [
        {"name": "sys_param_1", "label": "Path", "type": "str", "required": False, "default": "/",
         "pattern": "/[A-Za-z0-9._/-]{0,200}", "help": "Filesystem or directory"},
    ]

    def run(self):
        return self.ansible("ansible.builtin.command", {"argv": ["df", "-h", self.params["sys_param_1"]]})
