"""ims-core components: settings, renderers and one ComponentResource per network function."""
