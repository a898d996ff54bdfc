"""Start moto_server with corrections to its emulation of AWS.

1. Secrets Manager.

moto 5.2.1's update_secret_version_stage moves the AWSCURRENT label but does
not update the secret's default version. Two visible effects follow, neither
of which AWS has: a GetSecretValue without VersionStage (and every
BatchGetSecretValue) answers with the version that lost AWSCURRENT, and the
next PutSecretValue relabels that stale version instead of the current one,
leaving two versions labelled AWSCURRENT. AWS moves AWSCURRENT atomically to
the new version. joblet asks for AWSCURRENT explicitly and relies on AWS's
behaviour; this launcher makes moto keep its default version in step with
the label, so the tests exercise the product against AWS's semantics.

2. KMS signing. moto 5.2.1 ignores Sign's MessageType: with DIGEST it
hashes the 32-byte digest again and signs that, so its signature verifies
only as a signature over the digest taken as a message. AWS signs the digest
as given, which is what a Go crypto.Signer (and so joblet's KMS CA) relies
on: crypto/x509 hands the signer the digest of the certificate. This
launcher signs DIGEST requests over the digest as given (a "prehashed"
signature), as AWS does; RAW requests are left to moto.

3. KMS GetPublicKey. moto answers KeyId with the bare key id and only the
deprecated CustomerMasterKeySpec; AWS answers the key's ARN and KeySpec.
joblet records the ARN it is given back (in <prefix>/ca-kms-key and the
node's config), so this launcher answers as AWS does.

4. Lambda invocation. moto 5.2.1 runs a function in docker, which this
machine lacks. A function whose configuration has the environment variable
MOTO_LAMBDA_RIE_URL is invoked by POSTing the event to that URL: the invoke
API of the AWS Lambda Runtime Interface Emulator running the handler
(harness.StartLambda). Its answer is the function's result; an error
document from the runtime ({"errorMessage", "errorType"}) is a function
error, as Lambda reports it (X-Amz-Function-Error). This is how Secrets
Manager's rotation, and `aws lambda invoke`, reach the handler. Functions
without the variable are left to moto.

5. Secrets Manager rotation (RotateSecret), where moto 5.2.1 differs from
AWS (API_RotateSecret, "Troubleshoot rotation" in the user guide):
  a. moto rotates a secret that has no rotation function by moving
     AWSCURRENT onto a new, empty version (the secret then has no current
     value); AWS refuses: InvalidRequestException.
  b. moto reports RotationEnabled=false for a ScheduleExpression rule
     (only AutomaticallyAfterDays counts), and drops the rule from
     DescribeSecret; AWS enables rotation for either, and shows the rule.
  c. moto runs the remaining steps after one failed, then moves AWSCURRENT
     to the new version; AWS stops at the failed step, AWSCURRENT stays
     where it was and AWSPENDING stays on the new version, for the next
     attempt. (AWS runs the rotation asynchronously: RotateSecret answers
     its VersionId either way; the failure is the function's log.)
  d. moto refuses a rotation when AWSPENDING and AWSCURRENT are on the same
     version, which is how every rotation function (AWS's templates
     included) leaves a successful rotation, and starts a new one over an
     unfinished one; AWS does the opposite: a version labelled AWSPENDING
     but not AWSCURRENT is a rotation in progress, and a RotateSecret with
     another token is refused. Secrets Manager reattempts that rotation
     with its own token: a RotateSecret with the pending version's
     token here is that reattempt (the steps again, with the same token).
  e. A reused ClientRequestToken overwrites that version: moto's
     RotateSecret replaces the version it names with an empty one, and its
     PutSecretValue overwrites the value of a version labelled AWSPENDING.
     AWS never changes a version's value: a RotateSecret with the token of
     a finished rotation changes nothing, and a PutSecretValue with a
     token that has another value is refused (ResourceExistsException);
     one with the same value, or onto the empty version RotateSecret made,
     is accepted.
  f. RotateImmediately=false (a schedule set without rotating now): moto
     runs testSecret against an empty version; AWS tests the function on
     a pending copy of the current value and removes that copy after.
  LastRotatedDate is set when a rotation completes, not when it starts.

Everything else is moto_server unchanged: the arguments are moto_server's.
"""
import base64
import contextvars
import json
import sys

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.kms import responses as kms_responses
from moto.kms import utils as kms_utils
from moto.secretsmanager import models

_update = models.SecretsManagerBackend.update_secret_version_stage


def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
    result = _update(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
    if version_stage == "AWSCURRENT" and move_to_version_id:
        self.secrets[secret_id].default_version_id = move_to_version_id
    return result


models.SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage

_digest = contextvars.ContextVar("kms_digest", default=False)
_response_sign = kms_responses.KmsResponse.sign


def response_sign(self):
    token = _digest.set(self._get_param("MessageType") == "DIGEST")
    try:
        return _response_sign(self)
    finally:
        _digest.reset(token)


_ec_sign = kms_utils.ECDSAPrivateKey.sign
_rsa_sign = kms_utils.RSAPrivateKey.sign


def ec_sign(self, message, signing_algorithm):
    if not _digest.get():
        return _ec_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
    algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
    return self.private_key.sign(message, ec.ECDSA(Prehashed(algorithm)))


def rsa_sign(self, message, signing_algorithm):
    if not _digest.get():
        return _rsa_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms())
    pad, algorithm = self._RSAPrivateKey__padding_and_hash_algorithm(signing_algorithm)
    return self.private_key.sign(message, pad, Prehashed(algorithm))


def get_public_key(self):
    key_id = self._get_param("KeyId")
    self._validate_key_id(key_id)
    key, public_key = self.kms_backend.get_public_key(key_id)
    return json.dumps(
        {
            "CustomerMasterKeySpec": key.key_spec,
            "KeySpec": key.key_spec,
            "EncryptionAlgorithms": key.encryption_algorithms,
            "KeyId": key.arn,
            "KeyUsage": key.key_usage,
            "PublicKey": base64.b64encode(public_key).decode("UTF-8"),
            "SigningAlgorithms": key.signing_algorithms,
        }
    )


kms_responses.KmsResponse.sign = response_sign
kms_responses.KmsResponse.get_public_key = get_public_key
kms_utils.ECDSAPrivateKey.sign = ec_sign
kms_utils.RSAPrivateKey.sign = rsa_sign


# 4. Lambda invocation through the Runtime Interface Emulator.
from moto.awslambda import models as lambda_models
import urllib.request

RIE_URL_VAR = "MOTO_LAMBDA_RIE_URL"
_invoke_lambda = lambda_models.LambdaFunction._invoke_lambda


def invoke_lambda(self, event=None):
    url = (self.environment_vars or {}).get(RIE_URL_VAR)
    if not url:
        return _invoke_lambda(self, event)
    body = json.dumps(event if event is not None else {}).encode("utf-8")
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    timeout = int(self.timeout or 3) + 5
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = resp.read().decode("utf-8")
    except Exception as e:  # the emulator answered an error status, or none
        doc = json.dumps({"errorMessage": f"the Lambda Runtime Interface Emulator at {url} failed: {e}", "errorType": "Runtime.EmulatorError"})
        return doc, True, doc
    errored = False
    try:
        parsed = json.loads(out)
        errored = isinstance(parsed, dict) and "errorType" in parsed and "errorMessage" in parsed and len(parsed) <= 3
    except ValueError:
        pass
    return out, errored, out


lambda_models.LambdaFunction._invoke_lambda = invoke_lambda


# 5. Secrets Manager rotation as AWS runs it.
from moto.moto_api._internal import mock_random
from moto.secretsmanager import exceptions as sm_exc
from moto.secretsmanager.models import ReplicaSecret


def rotate_secret(self, secret_id, client_request_token=None, rotation_lambda_arn=None, rotation_rules=None, rotate_immediately=True):
    import time

    if not self._is_valid_identifier(secret_id):
        raise sm_exc.SecretNotFoundException()
    secret = self.secrets[secret_id]
    if isinstance(secret, ReplicaSecret):
        raise sm_exc.OperationNotPermittedOnReplica
    if secret.is_deleted():
        raise sm_exc.InvalidRequestException("You tried to perform the operation on a secret that's currently marked deleted.")
    if rotation_lambda_arn and len(rotation_lambda_arn) > 2048:
        raise sm_exc.InvalidParameterException("RotationLambdaARN must <= 2048 characters long.")
    lambda_arn = rotation_lambda_arn or secret.rotation_lambda_arn
    # 5a. No function, no rotation.
    if not lambda_arn:
        raise sm_exc.InvalidRequestException("No Lambda rotation function ARN is associated with this secret.")
    if client_request_token:
        self._client_request_token_validator(client_request_token)
    pending = next((vid for vid, v in secret.versions.items() if "AWSPENDING" in v["version_stages"] and "AWSCURRENT" not in v["version_stages"]), None)
    token = client_request_token
    # 5d. A pending version that is not current: a rotation in progress.
    if pending and token != pending:
        raise sm_exc.InvalidRequestException("A previous rotation isn't complete. That rotation will be reattempted.")
    # 5e. The token of a finished rotation: nothing to do.
    if token and token in secret.versions and token != pending:
        return secret.to_short_dict(version_id=token)
    from moto.awslambda.utils import get_backend

    lambda_backend = get_backend(self.account_id, self.region_name)
    try:
        lambda_backend.get_function(lambda_arn)
    except Exception:
        raise sm_exc.ResourceNotFoundException(f"Resource not found for ARN '{lambda_arn}'.")
    if rotation_rules:
        days = rotation_rules.get("AutomaticallyAfterDays")
        if days is not None and (days < 1 or days > 1000):
            raise sm_exc.InvalidParameterException("RotationRules.AutomaticallyAfterDays must be within 1-1000.")
        secret.joblet_rotation_rules = dict(rotation_rules)
        secret.auto_rotate_after_days = days or 0
        if days:
            secret.next_rotation_date = int(time.time()) + int(days) * 86400
        # 5b. A schedule of either kind enables rotation.
        secret.rotation_enabled = bool(days or rotation_rules.get("ScheduleExpression"))
    secret.rotation_requested = True
    secret.rotation_lambda_arn = lambda_arn
    if not token:
        token = str(mock_random.uuid4())
    if not rotate_immediately:
        # 5f. A schedule set without rotating now: AWS tests the function
        # on a pending copy of the current value, then removes that copy.
        cur = secret.versions.get(secret.default_version_id) or {}
        copy = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
        for k in ("secret_string", "secret_binary"):
            if k in cur:
                copy[k] = cur[k]
        secret.remove_version_stages_from_old_versions(["AWSPENDING"])
        secret.versions[token] = copy
        response_headers = {}
        lambda_backend.invoke(lambda_arn, qualifier=None,
                              body=json.dumps({"Step": "testSecret", "SecretId": secret.arn, "ClientRequestToken": token}),
                              headers={}, response_headers=response_headers)
        del secret.versions[token]
        return secret.to_short_dict()
    if token not in secret.versions:
        # AWS's empty pending version, for the function to fill.
        secret.remove_version_stages_from_old_versions(["AWSPENDING"])
        secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
    for step in ["create", "set", "test", "finish"]:
        response_headers = {}
        lambda_backend.invoke(lambda_arn, qualifier=None,
                              body=json.dumps({"Step": step + "Secret", "SecretId": secret.arn, "ClientRequestToken": token}),
                              headers={}, response_headers=response_headers)
        # 5c. A failed step ends the rotation; nothing is moved for it.
        if response_headers.get("x-amz-function-error"):
            return secret.to_short_dict(version_id=token)
    secret.last_rotation_date = int(time.time())
    return secret.to_short_dict(version_id=token)


models.SecretsManagerBackend.rotate_secret = rotate_secret

_to_dict = models.FakeSecret.to_dict


def secret_to_dict(self):
    d = _to_dict(self)
    rules = getattr(self, "joblet_rotation_rules", None)
    if self.rotation_requested and rules:
        d["RotationRules"] = rules
    return d


models.FakeSecret.to_dict = secret_to_dict

_check_existing = models.SecretsManagerBackend._check_with_existing_secrets_and_versions


def check_with_existing_secrets_and_versions(self, secret_name, client_request_token, secret_string, secret_binary, on_create=False):
    # 5e. A pending version with a value keeps it: the same value again is
    # the same request, another is refused.
    secret = self.secrets.get(secret_name)
    v = secret.versions.get(client_request_token) if secret is not None and client_request_token and not isinstance(secret, ReplicaSecret) else None
    if v is not None and "AWSPENDING" in v.get("version_stages", []) and ("secret_string" in v or "secret_binary" in v):
        if v.get("secret_string") == secret_string and v.get("secret_binary") == secret_binary:
            return secret
        raise sm_exc.ResourceExistsException(
            f"You can't use ClientRequestToken {client_request_token} because that value is already in use for a version of secret {secret.arn}.")
    return _check_existing(self, secret_name, client_request_token, secret_string, secret_binary, on_create)


models.SecretsManagerBackend._check_with_existing_secrets_and_versions = check_with_existing_secrets_and_versions

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
