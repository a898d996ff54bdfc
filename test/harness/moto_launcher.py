"""Start moto_server with two corrections to its emulation of AWS.

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

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
