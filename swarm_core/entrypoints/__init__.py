"""Entry points: the Azure Functions blueprints (HTTP, queue, timer).

Only these modules import `azure.functions`.
"""
