"""com.amiedge.Concentrator: acquisition, the spool (its one owner), uplink and the alarm lane."""
