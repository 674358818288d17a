//! The ledger table, created from `template.yaml` so the tests exercise the
//! schema that gets deployed, not a second copy of it.

use anyhow::{bail, Context as _};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_yaml::Value;

/// The template, read at compile time so a test binary carries the schema it was built with.
pub const TEMPLATE: &str = include_str!("../../../template.yaml");

/// The logical id of the table in template.yaml.
pub const LEDGER_TABLE: &str = "LedgerTable";

fn field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    v.get(name)
        .with_context(|| format!("template.yaml: {name} is missing"))
}

fn text<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    field(v, name)?
        .as_str()
        .with_context(|| format!("template.yaml: {name} is not a literal string"))
}

fn key_schema(v: &Value) -> anyhow::Result<Vec<KeySchemaElement>> {
    field(v, "KeySchema")?
        .as_sequence()
        .context("template.yaml: KeySchema is not a list")?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?))
                .build()?)
        })
        .collect()
}

/// The CreateTable parts of the template's ledger table.
pub struct TableSpec {
    pub attributes: Vec<AttributeDefinition>,
    pub keys: Vec<KeySchemaElement>,
    pub indexes: Vec<GlobalSecondaryIndex>,
}

pub fn ledger_spec() -> anyhow::Result<TableSpec> {
    let doc: Value = serde_yaml::from_str(TEMPLATE).context("template.yaml is not YAML")?;
    let props = field(
        field(field(&doc, "Resources")?, LEDGER_TABLE)?,
        "Properties",
    )?;
    let attributes = field(props, "AttributeDefinitions")?
        .as_sequence()
        .context("template.yaml: AttributeDefinitions is not a list")?
        .iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(a, "AttributeType")?))
                .build()?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let keys = key_schema(props)?;
    let indexes = match props.get("GlobalSecondaryIndexes") {
        None => Vec::new(),
        Some(list) => list
            .as_sequence()
            .context("template.yaml: GlobalSecondaryIndexes is not a list")?
            .iter()
            .map(|gsi| {
                let projection = field(gsi, "Projection")?;
                let mut p = Projection::builder()
                    .projection_type(ProjectionType::from(text(projection, "ProjectionType")?));
                if let Some(extra) = projection
                    .get("NonKeyAttributes")
                    .and_then(Value::as_sequence)
                {
                    for a in extra {
                        p = p.non_key_attributes(
                            a.as_str()
                                .context("template.yaml: NonKeyAttributes entry")?,
                        );
                    }
                }
                Ok(GlobalSecondaryIndex::builder()
                    .index_name(text(gsi, "IndexName")?)
                    .set_key_schema(Some(key_schema(gsi)?))
                    .projection(p.build())
                    .build()?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    if keys.is_empty() {
        bail!("template.yaml: the ledger table has no key");
    }
    Ok(TableSpec {
        attributes,
        keys,
        indexes,
    })
}

pub async fn create_ledger_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> anyhow::Result<()> {
    let spec = ledger_spec()?;
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(spec.attributes))
        .set_key_schema(Some(spec.keys));
    if !spec.indexes.is_empty() {
        create = create.set_global_secondary_indexes(Some(spec.indexes));
    }
    create
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))
        .with_context(|| format!("creating table {name}"))?;
    Ok(())
}
