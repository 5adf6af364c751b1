"""Virtual IPs: stable addresses that balance TCP connections over an app's healthy instances.

The table (``table.py``, pure) is computed by the master from committed state and pushed to
every agent on its work stream; each agent serves every VIP (``proxy.py``) on addresses it puts
on ``lo`` (``netlink.py``). See DESIGN.md.
"""

from dcosd.vips.table import LABEL, VipError, build_table, label_value, parse_label, parse_vip, \
    vips_from_port_definitions

__all__ = ["LABEL", "VipError", "build_table", "label_value", "parse_label", "parse_vip",
           "vips_from_port_definitions"]
