-- Prosody for `hearth-bench xmpp` (the reference for memory per idle c2s connection): c2s only,
-- STARTTLS on 127.0.0.1:15322, everything under /tmp/prosody-bench (owned by the prosody user).
pidfile = "/tmp/prosody-bench/prosody.pid"
data_path = "/tmp/prosody-bench/data"
plugin_paths = {}
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }
modules_disabled = { "s2s"; "offline"; "c2s_timeout" }
c2s_ports = { 15322 }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = {}
http_ports = {}
https_ports = {}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
log = { warn = "/tmp/prosody-bench/prosody.log" }
certificates = "/tmp/prosody-bench/certs"
limits = { c2s = { rate = "10mb/s" } }
VirtualHost "localhost"
    ssl = { certificate = "/tmp/prosody-bench/certs/localhost.crt", key = "/tmp/prosody-bench/certs/localhost.key" }
