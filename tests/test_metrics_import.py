"""prometheus_client is imported only when a metric is first used, never by loading the service's modules."""

import subprocess
import sys

from support.service import ROOT

from sms_service import metrics

LOADED_BEFORE_THE_PACKAGED_SETTINGS = (
    "import sms_service.cli, sms_service.serving, sms_service.app, sms_service.config, "
    "sms_service.storage, sms_service.plugin_loader; import sys; "
    "print('prometheus_client' in sys.modules)"
)


def test_loading_the_service_does_not_import_the_client():
    # The client chooses between one process's values and the workers' shared files as it
    # is imported: by then the packaged settings must have set PROMETHEUS_MULTIPROC_DIR.
    result = subprocess.run([sys.executable, "-c", LOADED_BEFORE_THE_PACKAGED_SETTINGS], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_metric_is_built_once_on_first_use():
    counter = metrics.Counter("sms_test_lazy_total", "A counter of this test", ["kind"])
    assert counter._metric is None
    counter.labels("a").inc()
    built = counter._metric
    counter.labels("a").inc(2)
    assert counter._metric is built
    assert built.labels("a")._value.get() == 3
