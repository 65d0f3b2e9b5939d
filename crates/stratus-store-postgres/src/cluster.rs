//! Cluster mode: node registry, queue leases with epoch fencing, LISTEN/NOTIFY.
