"""`dsedge flash --inventory` reads Ansible inventories (INI and YAML) as they are: one device
per host, group and host variables merged as Ansible merges them; bad files name the line/key."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsedge import deploy
from dsedge.cli import app
from dsedge.deploy.inventory import load_devices
from dsedge.errors import UsageError

INI = """\
# the lab's Jetsons
orin-00 ansible_host=10.0.0.10          # ungrouped

[lab]
orin-01 ansible_host=10.0.0.11 ansible_user=ubuntu
orin-02:2222 ansible_host=10.0.0.12
nano-[1:2] ansible_host=nano.lan

[lab:vars]
ansible_user=nvidia
dsedge_runtime=onnxruntime

[field]
orin-[08:09].site ansible_ssh_private_key_file=~/.ssh/field_key

[fleet:children]
lab
field

[fleet:vars]
ansible_python_interpreter=/usr/bin/python3.10
ansible_port=22022

[all:vars]
ansible_user=admin
"""

YAML = """\
all:
  vars:
    ansible_user: admin
  hosts:
    orin-00: {ansible_host: 10.0.0.10}
  children:
    fleet:
      vars: {ansible_python_interpreter: /usr/bin/python3.10, ansible_port: 22022}
      children:
        lab:
          vars: {ansible_user: nvidia, dsedge_runtime: onnxruntime}
          hosts:
            orin-01: {ansible_host: 10.0.0.11, ansible_user: ubuntu}
            orin-02: {ansible_host: 10.0.0.12, ansible_port: 2222}
            nano-[1:2]: {ansible_host: nano.lan}
        field:
          hosts:
            orin-[08:09].site:
              ansible_ssh_private_key_file: ~/.ssh/field_key
"""


def _devices(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return {t.name: t for t in load_devices(inventory=p)}


@pytest.mark.parametrize("name,text", [("hosts", INI), ("inventory.ini", INI), ("inventory.yml", YAML)])
def test_ini_and_yaml_inventories_give_the_same_devices(tmp_path, name, text):
    d = _devices(tmp_path, name, text)
    assert list(d) == ["orin-00", "orin-01", "orin-02", "nano-1", "nano-2", "orin-08.site", "orin-09.site"]
    assert str(d["orin-00"].address) == "admin@10.0.0.10"                  # [all:vars] only
    assert str(d["orin-01"].address) == "ubuntu@10.0.0.11:22022"           # host var beats [lab:vars]
    assert str(d["orin-02"].address) == "nvidia@10.0.0.12:2222"            # host:port beats [fleet:vars]
    assert str(d["nano-2"].address) == "nvidia@nano.lan:22022"
    assert d["nano-1"].runtime == "onnxruntime" and d["orin-08.site"].runtime is None
    assert d["orin-08.site"].address.host == "orin-08.site" and d["orin-08.site"].address.user == "admin"
    assert d["orin-09.site"].identity == str(Path("~/.ssh/field_key").expanduser())
    assert d["orin-01"].python == "/usr/bin/python3.10" and d["orin-00"].python == "python3"


def test_the_fleet_format_still_reads(tmp_path):
    d = _devices(tmp_path, "fleet.yaml", "defaults: {python: python3.11}\ndevices:\n  - nvidia@orin-01\n")
    assert d["nvidia@orin-01"].python == "python3.11"


@pytest.mark.parametrize("name,text,match", [
    ("hosts", "[lab]\norin-01 ansible_port=twenty\n", r"hosts:2: host orin-01: ansible_port='twenty' is not a port"),
    ("hosts", "[lab]\norin-01 ansible_host\n", r"hosts:2: 'ansible_host' is not key=value"),
    ("hosts", "[lab:hosts]\norin-01\n", r"hosts:1: section header '\[lab:hosts\]' is not \[group\]"),
    ("hosts", "[lab:vars]\nansible_user\n", r"hosts:2: 'ansible_user' in \[lab:vars\] is not key=value"),
    ("hosts", "[a:children]\nb c\n", r"hosts:2: \[a:children\] lists one group name per line"),
    ("hosts", "[a:children]\nb\n[b:children]\na\n[b]\nh\n", r"groups .* contain each other"),
    ("hosts", "[lab]\nlocalhost ansible_connection=local\n", r"hosts:2: host localhost has ansible_connection=local"),
    ("hosts", "[lab]\norin-[09:01]\n", r"hosts:2: host range \[09:01\] is empty"),
    ("hosts", "[lab]\n", r"lists no hosts"),
    ("inv.yml", "all:\n  host:\n    orin-01: {}\n", r"inv.yml: all: unknown key\(s\) \['host'\]"),
    ("inv.yml", "all:\n  hosts:\n    - orin-01\n", r"inv.yml: all.hosts is not a mapping"),
    ("inv.yml", "all:\n  children:\n    lab:\n      hosts:\n        orin-01: 3\n",
     r"all.children.lab.hosts.orin-01 is not a mapping of variables"),
    ("inv.yml", "nodes: [a, b]\n", r"has no `devices:` list and is not an Ansible inventory"),
])
def test_bad_inventories_name_the_line_or_key(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_devices(inventory=p)


def test_cli_exits_2_naming_the_line(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("[lab]\norin-01 ansible_port=twenty\n")
    r = CliRunner().invoke(app, ["devices", "status", "--inventory", str(p)])
    assert r.exit_code == 2 and "hosts:2" in r.output and "ansible_port" in r.output and "Traceback" not in r.output


def test_flash_through_an_ansible_inventory(sshd, artifacts, tmp_path):
    """Two hosts of one INI inventory, both this loopback sshd, each with its own root: the key,
    user, port and python come from the inventory alone (no --identity / --python)."""
    a, _ = artifacts
    inv = tmp_path / "hosts"
    inv.write_text(f"[jetsons]\ndev-a dsedge_root={tmp_path / 'a'}\ndev-b dsedge_root={tmp_path / 'b'}\n\n"
                   f"[jetsons:vars]\nansible_host=127.0.0.1\nansible_port={sshd.port}\nansible_user={sshd.user}\n"
                   f"ansible_ssh_private_key_file={sshd.user_key}\nansible_python_interpreter={sys.executable}\n")
    results = deploy.flash(a, [], inv, runtime="onnxruntime", known_hosts=sshd.known_hosts)
    assert [r.device for r in results] == ["dev-a", "dev-b"]
    for r, root in zip(results, ("a", "b")):
        assert r.ok, (r.error, r.fix)
        assert os.readlink(tmp_path / root / "current").endswith(r.release)
