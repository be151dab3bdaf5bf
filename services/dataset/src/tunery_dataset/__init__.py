"""The dataset service: datasets, examples, immutable versions, validation, curation and token statistics."""
