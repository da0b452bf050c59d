"""Adapters: the implementations of the ports — in memory (tests, demo), on Azure (Cosmos DB,
Blob storage, Storage queues, Web PubSub, the managed identity) and the LLMs (offline, OpenAI).
Only these modules import Azure SDKs."""
