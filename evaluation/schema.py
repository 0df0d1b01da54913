"""Tables owned by evaluation. Append a new migration; never edit an applied one."""
from core.workspace import migrations

migration = migrations("evaluation")
