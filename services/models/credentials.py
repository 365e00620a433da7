"""Sealing of version credentials before they are stored.

A version may carry its secret value as ``credential.plaintext_value``
(input only). :class:`CredentialSealer` replaces it with
``credential.encrypted_value`` (AES-256-GCM under the first key of the
registry's :class:`~services.kernel.secrets.Keyring`, bound to the version's
model, id, provider and endpoint) before anything is stored, recorded or
returned, so the plaintext never reaches the database, the change feed, the
events, the audit entries or a response.

Contract of :meth:`CredentialSealer.seal`, applied in place:

- a credential equal to the stored one is left as it is;
- a plaintext value equal to what the stored encrypted value holds, under the
  current encrypting key, keeps the stored ciphertext (so re-importing a
  document changes nothing; after a key rotation it is re-encrypted);
- any other plaintext value is encrypted with a fresh nonce; without a key
  this fails with FAILED_PRECONDITION (reason ``NO_SECRETS_KEY``);
- an encrypted value sent back by a client must decrypt with a configured key
  for this version: an unknown key id is FAILED_PRECONDITION
  (``UNKNOWN_SECRETS_KEY``), any other failure INVALID_ARGUMENT
  (``UNDECRYPTABLE_CREDENTIAL``).

Error messages name the version and the key id, never the value.
"""

from __future__ import annotations

from llmgw.models.v1 import models_pb2
from services.kernel.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.kernel.secrets import (
    DecryptionFailed,
    Keyring,
    NoEncryptionKey,
    Sealed,
    SecretsError,
    UnknownKeyId,
    version_binding,
)
from services.models.refs import version_name

_FIELD = "version.credential.encrypted_value"


class CredentialSealer:
    """Encrypts plaintext credentials and checks encrypted ones (module docstring)."""

    def __init__(self, keyring: Keyring) -> None:
        """Seal and open with ``keyring`` (an empty one refuses plaintext values)."""
        self._keyring = keyring

    def seal(
        self, version: models_pb2.ModelVersion, stored: models_pb2.ModelVersion | None
    ) -> None:
        """Make ``version.credential`` storable; ``stored`` is its current state, if any."""
        credential = version.credential
        if stored is not None and credential == stored.credential:
            return
        source = credential.WhichOneof("source")
        bound_to = _binding(version)
        if source == "plaintext_value":
            plaintext = credential.plaintext_value
            if stored is not None and self._holds(stored, bound_to, plaintext):
                credential.encrypted_value.CopyFrom(stored.credential.encrypted_value)
                return
            try:
                sealed = self._keyring.encrypt(plaintext, bound_to)
            except NoEncryptionKey:
                raise FailedPrecondition(
                    f"{version_name(version.model, version.version)}: the registry has no "
                    "secrets key to encrypt credential.plaintext_value; configure one or "
                    "use credential.env_var",
                    reason="NO_SECRETS_KEY",
                ) from None
            credential.encrypted_value.CopyFrom(
                models_pb2.EncryptedValue(key_id=sealed.key_id, ciphertext=sealed.ciphertext)
            )
        elif source == "encrypted_value":
            self._check(version, bound_to)

    def _holds(self, stored: models_pb2.ModelVersion, bound_to: bytes, plaintext: str) -> bool:
        if stored.credential.WhichOneof("source") != "encrypted_value":
            return False
        if stored.credential.encrypted_value.key_id != self._keyring.encryption_key_id:
            return False
        try:
            return self._keyring.decrypt(_sealed(stored.credential), bound_to) == plaintext
        except SecretsError:
            return False

    def _check(self, version: models_pb2.ModelVersion, bound_to: bytes) -> None:
        name = version_name(version.model, version.version)
        try:
            self._keyring.decrypt(_sealed(version.credential), bound_to)
        except UnknownKeyId as exc:
            raise FailedPrecondition(f"{name}: {exc}", reason="UNKNOWN_SECRETS_KEY") from None
        except DecryptionFailed as exc:
            raise InvalidArgument(
                f"{name}: credential.encrypted_value does not decrypt for this version",
                [FieldViolation(_FIELD, str(exc), "UNDECRYPTABLE_CREDENTIAL")],
                reason="UNDECRYPTABLE_CREDENTIAL",
            ) from None


def _sealed(credential: models_pb2.CredentialRef) -> Sealed:
    value = credential.encrypted_value
    return Sealed(key_id=value.key_id, ciphertext=value.ciphertext)


def _binding(version: models_pb2.ModelVersion) -> bytes:
    return version_binding(version.model, version.version, version.provider, version.endpoint)
