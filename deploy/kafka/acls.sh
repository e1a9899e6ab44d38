#!/usr/bin/env bash
# Kafka ACLs for Watchkeeper: who may write which topic (docs/security-topics.md).
#
# The agent acts on what it reads from its own topics: a FIRING record on the alerts topic
# pages and remediates, an "approved" record on the audit topic releases a pending action,
# a checkpoint on the state topic becomes detector state. Records there are signed
# (WATCHKEEPER_TOPIC_KEYS_FILE), and these ACLs keep everyone else from writing them at all:
#
#   agent principal     reads the event topics; writes dlq, alerts, audit, retrain, state;
#                       reads alerts, audit, state (its own consumers); its consumer groups
#   approver principal  reads and writes the audit topic (watchkeeper actions approve|reject)
#   service principals  write their own event topic, nothing else
#   retrain principal   reads the retrain topic (the trainer that acts on retrain requests)
#
# The broker must deny what no ACL allows (allow.everyone.if.no.acl.found=false, Kafka's
# default) and authenticate clients (SASL or mTLS), or none of this means anything.
#
# Usage: BOOTSTRAP=kafka:9093 COMMAND_CONFIG=admin.properties deploy/kafka/acls.sh
# Every name below can be overridden from the environment; keep them equal to the agents'
# WATCHKEEPER_* settings (tests/deploy/test_kafka_acls.py checks the defaults agree).
set -euo pipefail

KAFKA_ACLS="${KAFKA_ACLS:-kafka-acls.sh}"
BOOTSTRAP="${BOOTSTRAP:-localhost:9092}"
COMMAND_CONFIG="${COMMAND_CONFIG:-}"

AGENT="${AGENT_PRINCIPAL:-User:watchkeeper-agent}"
APPROVER="${APPROVER_PRINCIPAL:-User:watchkeeper-approver}"
INFERENCE_SERVICE="${INFERENCE_PRINCIPAL:-User:inference-service}"
LLM_SERVICE="${LLM_PRINCIPAL:-User:llm-gateway}"
GPU_SAMPLER="${GPU_PRINCIPAL:-User:watchkeeper-emit}"
RAG_SERVICE="${RETRIEVAL_PRINCIPAL:-User:rag-service}"
FEEDBACK_SERVICE="${FEEDBACK_PRINCIPAL:-User:feedback-service}"
RETRAINER="${RETRAIN_PRINCIPAL:-User:retrain-trigger}"

TOPIC_INFERENCE="${WATCHKEEPER_TOPIC_INFERENCE:-watchkeeper.inference}"
TOPIC_LLM="${WATCHKEEPER_TOPIC_LLM:-watchkeeper.llm}"
TOPIC_GPU="${WATCHKEEPER_TOPIC_GPU:-watchkeeper.gpu}"
TOPIC_RETRIEVAL="${WATCHKEEPER_TOPIC_RETRIEVAL:-watchkeeper.retrieval}"
TOPIC_FEEDBACK="${WATCHKEEPER_TOPIC_FEEDBACK:-watchkeeper.feedback}"
TOPIC_DLQ="${WATCHKEEPER_TOPIC_DLQ:-watchkeeper.dlq}"
TOPIC_ALERTS="${WATCHKEEPER_TOPIC_ALERTS:-watchkeeper.alerts}"
TOPIC_AUDIT="${WATCHKEEPER_TOPIC_AUDIT:-watchkeeper.audit}"
TOPIC_RETRAIN="${WATCHKEEPER_TOPIC_RETRAIN:-watchkeeper.retrain}"
TOPIC_STATE="${WATCHKEEPER_STATE_TOPIC:-watchkeeper.state}"
# the agents' consumer groups are <group>, <group>.notifier and <group>.actions
GROUP="${WATCHKEEPER_GROUP_ID:-watchkeeper}"
RETRAIN_GROUP="${RETRAIN_GROUP:-retrain-trigger}"

acl() {  # acl PRINCIPAL OPERATION RESOURCE-FLAGS...
  local principal="$1" operation="$2"
  shift 2
  "$KAFKA_ACLS" --bootstrap-server "$BOOTSTRAP" ${COMMAND_CONFIG:+--command-config "$COMMAND_CONFIG"} \
    --add --allow-principal "$principal" --operation "$operation" "$@"
}

# --- the agent ------------------------------------------------------------------------------
for topic in "$TOPIC_INFERENCE" "$TOPIC_LLM" "$TOPIC_GPU" "$TOPIC_RETRIEVAL" "$TOPIC_FEEDBACK"; do
  acl "$AGENT" Read --topic "$topic"
done
for topic in "$TOPIC_ALERTS" "$TOPIC_AUDIT" "$TOPIC_STATE"; do  # its own outbox, ledger and checkpoints
  acl "$AGENT" Read --topic "$topic"
  acl "$AGENT" Write --topic "$topic"
done
for topic in "$TOPIC_DLQ" "$TOPIC_RETRAIN"; do
  acl "$AGENT" Write --topic "$topic"
done
# the agent creates the state topic (compacted) when it is missing; create it yourself and drop this line
acl "$AGENT" Create --topic "$TOPIC_STATE"
acl "$AGENT" Read --group "$GROUP" --resource-pattern-type prefixed

# --- the approver (watchkeeper actions list|approve|reject; reads without a consumer group) --
acl "$APPROVER" Read --topic "$TOPIC_AUDIT"
acl "$APPROVER" Write --topic "$TOPIC_AUDIT"

# --- the services: each writes its own event topic, nothing else ------------------------------
acl "$INFERENCE_SERVICE" Write --topic "$TOPIC_INFERENCE"
acl "$LLM_SERVICE" Write --topic "$TOPIC_LLM"
acl "$GPU_SAMPLER" Write --topic "$TOPIC_GPU"
acl "$RAG_SERVICE" Write --topic "$TOPIC_RETRIEVAL"
acl "$FEEDBACK_SERVICE" Write --topic "$TOPIC_FEEDBACK"

# --- the retrain trigger: reads retrain requests -----------------------------------------------
acl "$RETRAINER" Read --topic "$TOPIC_RETRAIN"
acl "$RETRAINER" Read --group "$RETRAIN_GROUP"
