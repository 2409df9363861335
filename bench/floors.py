"""The floors: the least any implementation must spend on a job, each measured beside its target.

Every target of the bench is a ratio to its own floor, measured in the same run:

* :data:`READ_JSON_SCRIPT`, a minimal Python script that reads one JSON file (the cached token
  file) and prints a field: the floor of the cached ``tokenflow token``.
* :func:`floor_write`, "the floor write": write one file, fsync it, rename it over the old one.
  A fetch or refresh with the default file store is compared with a bare urllib3 request plus
  this write.
* :data:`URLLIB3_ONESHOT_SCRIPT`, a script that does what a renewal from the CLI does on the
  wire: import urllib3, POST the refresh grant with HTTP Basic, parse the JSON reply, do the
  floor write, print the access token. The floor of ``tokenflow token --force-refresh``.
"""

from __future__ import annotations

import os
from pathlib import Path

READ_JSON_SCRIPT = (
    "import json, sys\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    print(json.load(f)['token']['access_token'])\n"
)


def floor_write(path: Path, data: bytes) -> None:
    """Write *data* to a temporary file beside *path*, fsync it and rename it to *path*."""
    tmp = f"{path}.floor.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# argv: TOKEN_URL CLIENT_ID CLIENT_SECRET REFRESH_TOKEN OUTPUT_FILE
URLLIB3_ONESHOT_SCRIPT = '''\
import base64, json, os, sys
from urllib.parse import urlencode
import urllib3

url, client_id, secret, refresh_token, out = sys.argv[1:6]
pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
reply = urllib3.PoolManager().request(
    "POST", url, body=urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token}),
    headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic " + pair})
data = json.loads(reply.data)
tmp = out + ".tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(data).encode())
os.fsync(fd)
os.close(fd)
os.replace(tmp, out)
print(data["access_token"])
'''
