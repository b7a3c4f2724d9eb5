"""Settings of a legacy web process that also serves two views that fail on purpose
(ops/tests/failing_urls.py): the tracing test sees a view's exception reach its span."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "ops.tests.failing_urls"
