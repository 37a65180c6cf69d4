"""Plugin signatures, checked the way Grafana's loader checks them.

``verify_plugin`` / ``verify_bundle`` compute the signature status of a plugin directory,
``decide`` applies the load policy, ``evaluate`` does both for a whole package.
"""

from plugin_operator.signatures.model import (
    ErrorCode,
    SignatureResult,
    SignatureStatus,
    SignatureType,
    VerifyConfig,
)
from plugin_operator.signatures.policy import Decision, LoadPolicy, decide, evaluate
from plugin_operator.signatures.verify import PluginVerification, verify_bundle, verify_plugin

__all__ = [
    "Decision",
    "ErrorCode",
    "LoadPolicy",
    "PluginVerification",
    "SignatureResult",
    "SignatureStatus",
    "SignatureType",
    "VerifyConfig",
    "decide",
    "evaluate",
    "verify_bundle",
    "verify_plugin",
]
