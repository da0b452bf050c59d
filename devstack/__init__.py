"""devstack: local stand-ins for the Azure services the app uses (launchers and small emulators)."""
