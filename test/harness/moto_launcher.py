"""Start moto_server with one correction to its Secrets Manager emulation.

moto 5.2.1's update_secret_version_stage moves the AWSCURRENT label but does
not update the secret's default version. Two visible effects follow, neither
of which AWS has: a GetSecretValue without VersionStage (and every
BatchGetSecretValue) answers with the version that lost AWSCURRENT, and the
next PutSecretValue relabels that stale version instead of the current one,
leaving two versions labelled AWSCURRENT. AWS moves AWSCURRENT atomically to
the new version. joblet asks for AWSCURRENT explicitly and relies on AWS's
behaviour; this launcher makes moto keep its default version in step with
the label, so the tests exercise the product against AWS's semantics.

Everything else is moto_server unchanged: the arguments are moto_server's.
"""
import sys

from moto.secretsmanager import models

_update = models.SecretsManagerBackend.update_secret_version_stage


def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
    result = _update(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
    if version_stage == "AWSCURRENT" and move_to_version_id:
        self.secrets[secret_id].default_version_id = move_to_version_id
    return result


models.SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
