"""ims-core: read the stack's settings, build one component per network function, export."""

import pulumi

from components import program
from components.settings import SettingsError, from_pulumi_config

try:
    settings = from_pulumi_config()
except SettingsError as error:
    # Before any resource exists: a bad config creates nothing.
    raise pulumi.RunError(str(error)) from None

program.export(program.build(settings), settings)
