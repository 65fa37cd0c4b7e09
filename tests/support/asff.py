"""What an AWS Security Finding Format finding of ``rotator report --output asff`` must
hold: a JSON Schema of the required fields, for the unit and end-to-end tests."""

from __future__ import annotations

from typing import Any

# The ASFF fields every finding must have (AWS Security Hub User Guide, "Required
# top-level ASFF attributes"; AwsSecurityFinding in the API reference: lengths, patterns),
# and what rotator promises beside them.
ASFF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "SchemaVersion",
        "Id",
        "ProductArn",
        "GeneratorId",
        "AwsAccountId",
        "Types",
        "CreatedAt",
        "UpdatedAt",
        "Severity",
        "Title",
        "Description",
        "Resources",
        "Compliance",
        "RecordState",
        "ProductFields",
    ],
    "properties": {
        "SchemaVersion": {"const": "2018-10-08"},
        "Id": {"type": "string", "minLength": 1, "maxLength": 512},
        "ProductArn": {
            "type": "string",
            "pattern": r"^arn:aws[a-z-]*:securityhub:[a-z0-9-]+:\d{12}:product/\d{12}/default$",
        },
        "GeneratorId": {"type": "string", "minLength": 1, "maxLength": 512},
        "AwsAccountId": {"type": "string", "pattern": r"^\d{12}$"},
        "Types": {"type": "array", "minItems": 1, "maxItems": 50, "items": {"type": "string"}},
        "CreatedAt": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "UpdatedAt": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "Severity": {
            "type": "object",
            "required": ["Label"],
            "properties": {"Label": {"enum": ["INFORMATIONAL", "MEDIUM"]}},
        },
        "Title": {"type": "string", "minLength": 1, "maxLength": 256},
        "Description": {"type": "string", "minLength": 1, "maxLength": 1024},
        "Resources": {
            "type": "array",
            "minItems": 1,
            "maxItems": 32,
            "items": {
                "type": "object",
                "required": ["Type", "Id", "Partition", "Region"],
                "properties": {
                    "Type": {"enum": ["AwsIamAccessKey", "AwsIamUser", "Other"]},
                    "Id": {"type": "string", "minLength": 1},
                },
            },
        },
        "Compliance": {
            "type": "object",
            "required": ["Status", "RelatedRequirements"],
            "properties": {
                "Status": {"enum": ["PASSED", "FAILED"]},
                "RelatedRequirements": {"type": "array", "maxItems": 32},
            },
        },
        "RecordState": {"const": "ACTIVE"},
        "ProductFields": {
            "type": "object",
            "maxProperties": 50,
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 2048},
        },
    },
}
