"""What both sides of createBackup agree on: the image_type the API sets and the agent rotates by."""

BACKUP_IMAGE_TYPE = "backup"
