-- One database per service, owned by the `tunery` role the postgres image creates from POSTGRES_USER:
-- each service owns its data (DESIGN.md) and none reads another's tables.
-- Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d).
CREATE DATABASE tunery_dataset OWNER tunery;
CREATE DATABASE tunery_trainer OWNER tunery;
-- The evaluator's (services/evaluator; not in compose yet): created now because this script runs on a new volume only.
CREATE DATABASE tunery_evaluator OWNER tunery;
CREATE DATABASE tunery_gateway OWNER tunery;
