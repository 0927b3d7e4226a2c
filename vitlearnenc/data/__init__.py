"""LightningDataModules (CIFAR-10/100, image folders and archives, streamed shards, synthetic) and the
on-device pipeline: augment -> resize -> encrypt -> normalise, batched, in
``EncryptedDataModule.on_after_batch_transfer``."""

from vitlearnenc.data.augment import crop_flip, draw_crop_flip, random_crop_flip
from vitlearnenc.data.base import DatasetNotFoundError, EncryptedDataModule
from vitlearnenc.data.cifar import CIFARDataModule
from vitlearnenc.data.datasets import UInt8ImageDataset, collate_batch, split_train_val
from vitlearnenc.data.folder import ImageFolderDataModule, PredictFolderDataModule
from vitlearnenc.data.streaming import StreamingDataModule
from vitlearnenc.data.synthetic import SyntheticDataModule, make_synthetic_images

__all__ = [
    "CIFARDataModule",
    "DatasetNotFoundError",
    "EncryptedDataModule",
    "ImageFolderDataModule",
    "PredictFolderDataModule",
    "StreamingDataModule",
    "SyntheticDataModule",
    "UInt8ImageDataset",
    "collate_batch",
    "crop_flip",
    "draw_crop_flip",
    "make_synthetic_images",
    "random_crop_flip",
    "split_train_val",
]
