"""Latest logins: who logged in recently (last)."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "Latest logins"
    description = "Lists the most recent logins recorded on the host (last -n N)."
    platform = "ssh"
    category = "Security"
    timeout = 60
    params = [
        {"name": "sys_param_1", "label": "Entries", "type": "int", "required": True, "min": 1, "max": 1000,
         "default": 20},
    ]

    async def run(self):
        return await self.ssh(["last", "-n", str(self.params["sys_param_1"])])
