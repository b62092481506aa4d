# Installed by the mcpd package: the CLI talks to the system daemon of mcpd.service.
export MCPD_HOME=/var/lib/mcpd
