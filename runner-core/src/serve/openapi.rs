//! The OpenAPI 3.1 document, built from the served runners' input and output types.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::Endpoint;

use serde_json::{json, Value};

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "code", "message"],
                "properties": {
                    "status": { "type": "integer", "description": "the HTTP status" },
                    "code": { "type": "string", "description": "stable code: invalid_input, bad_request, unauthorized, not_found, payload_too_large, hook_error, panic, batch_mismatch, timeout, overloaded, not_ready, internal" },
                    "message": { "type": "string" }
                }
            }
        }
    })
}

fn body_schema(media_type: &str, schema: Option<Value>) -> Value {
    let schema = match (media_type, schema) {
        ("application/json", Some(schema)) => schema,
        ("application/json", None) => {
            json!({ "description": "JSON (the type does not implement schemars::JsonSchema)" })
        }
        _ => json!({ "type": "string", "format": "binary" }),
    };
    json!({ media_type: { "schema": schema } })
}

fn errors() -> Value {
    let error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    let mut responses = serde_json::Map::new();
    for (status, why) in [
        ("400", "malformed body"),
        ("401", "missing or wrong API key (when one is configured)"),
        ("408", "the body stalled longer than the body timeout"),
        ("413", "body larger than the limit"),
        ("422", "body of the wrong shape, or rejected by the runner"),
        ("500", "a hook failed or panicked"),
        ("503", "overloaded (see Retry-After) or not ready"),
        ("504", "the request exceeded the time limit"),
    ] {
        responses.insert(status.into(), json!({ "description": why, "content": error }));
    }
    Value::Object(responses)
}

pub(crate) fn document(models: &BTreeMap<String, Arc<Endpoint>>) -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "#/components/schemas/".into();
    let mut generator = settings.into_generator();
    let mut paths = serde_json::Map::new();
    for (name, endpoint) in models {
        let schemas = endpoint.schemas(&mut generator);
        let (input_type, output_type) = endpoint.media_types();
        let mut responses = errors();
        responses["200"] =
            json!({ "description": "the prediction", "content": body_schema(output_type, schemas.output) });
        let manifest = endpoint.manifest();
        let operation = json!({
            "summary": format!("Predict with {}", manifest.model),
            "description": format!("Runner `{}`: postprocess_data(predict(model, preprocess_data(body))).", endpoint.runner()),
            "operationId": format!("predict_{}", name.replace(['-', '.'], "_")),
            "requestBody": { "required": true, "content": body_schema(input_type, schemas.input) },
            "responses": responses,
        });
        paths.insert(format!("/models/{name}/predict"), json!({ "post": operation.clone() }));
        if models.len() == 1 {
            let mut single = operation;
            single["operationId"] = json!("predict");
            paths.insert("/predict".into(), json!({ "post": single }));
        }
    }
    let plain =
        |summary: &str| json!({ "get": { "summary": summary, "responses": { "200": { "description": "OK" } } } });
    paths.insert("/livez".into(), plain("Liveness: 200 while the process runs"));
    paths.insert("/readyz".into(), plain("Readiness: 200 once every model is loaded, 503 before"));
    paths.insert("/metrics".into(), plain("Prometheus metrics"));
    paths.insert("/models".into(), plain("The served models"));
    let mut components: serde_json::Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    components.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "runner model server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Serving {}", models.values().map(|e| e.manifest().model.to_string()).collect::<Vec<_>>().join(", ")),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } }
        }
    })
}
