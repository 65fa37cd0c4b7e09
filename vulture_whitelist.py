"""Names in rotator/ that vulture cannot see used: ``make lint`` runs vulture over rotator/
and this file ([tool.vulture] in pyproject.toml). Each is reached by a library, a runtime or
the tests through a way vulture does not follow; the comment says which. Pydantic validators
and typer commands are ignored by their decorators there instead. Code used by nothing goes:
do not add it here."""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# pydantic reads a model's configuration from this class attribute.
_.model_config

# pydantic-settings calls this hook, and passes its sources by keyword (settings.py).
_.settings_customise_sources
_.settings_cls
_.dotenv_settings
_.file_secret_settings

# structlog calls the wrapped logger's method named after the level (audit._Tee keeps the
# whole logger interface, as structlog's PrintLogger does).
_.debug
_.warn
_.critical

# sqlite3 reads the connection's row factory (journal/sqlite.py).
_.row_factory

# The Lambda runtime calls the handler named in deploy/template.yaml.
_.handler

# tests/conftest.py forgets the registered secrets after each test (redaction.py).
_.forget_all

# rotator.testing's IAM twin: calls and helpers that tests seed and steer it with.
_.create_login_profile
_.update_account_password_policy
_.use_password
_.fail_next
_.attach_server_certificate
_.create_open_id_connect_provider
_.detach_server_certificate

# APScheduler asks a trigger for its next fire time (cron.py's CrontabTrigger).
_.get_next_fire_time

# The daemon's HTTP endpoint reports its open connections (tests/daemon/test_http.py checks
# the limit with it).
_.connections

# permissions.py: the IAM actions that take no resource ARN; tests/test_permissions.py
# checks every statement against it.
_.UNSCOPED
_.waited_s  # Pacer: read by tests (how long callers queued)
_main  # cli.py: the typer callback holding --version
_.caption  # rich Table attributes set by render._quiet_note
_.caption_justify

# settings.load_config: the tests read policy files into a Config with it (the commands go
# through app.load, which reports every problem in one round via rotator/examine.py).
_.load_config
# compliance.py: every AWS action `rotator report` calls; `iam-policy --for report` grants
# them and tests/e2e/test_report.py checks the calls a report makes against it.
_.REPORT_ACTIONS
