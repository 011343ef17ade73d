"""The project's settings with the URLs of the benchmark's web (figure (p): the project's, and
beside them the baseline's plain view, devtools.benchmark.web). Outside the benchmark package,
whose import needs the apps loaded."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "devtools.benchmark.web"
